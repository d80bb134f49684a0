"""The sim bench graph built in code names the nodes of the graph files that `loopylab launch` runs."""

from pathlib import Path

from loopylab.actuation.graphs import sim_bench_graph
from loopylab.bus.launch import load_graph, resolve

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def _entries(spec):
    return [(n.name, n.run) for n in spec.nodes]


def test_code_graph_has_the_nodes_of_the_graph_files():
    assert _entries(sim_bench_graph()) == _entries(load_graph(GRAPHS / "sim_bench.toml"))
    assert _entries(sim_bench_graph(perception={})) == _entries(load_graph(GRAPHS / "sim_bench_perception.toml"))
    for node in sim_bench_graph(perception={}).nodes:
        resolve(node.run)  # every entry loads


def test_code_graph_and_graph_files_are_sealed_with_one_access_policy():
    want = {"sim/oracle": ["grader"], "sim/reset": ["evaluator"], "safety/reset": ["operator"]}
    for spec in (sim_bench_graph(), *(load_graph(p) for p in GRAPHS.glob("sim_bench*.toml"))):
        assert spec.sealed and spec.access == want


def test_code_graph_runs_in_process_by_default_and_as_processes_elsewhere():
    a, b = sim_bench_graph(), sim_bench_graph()
    assert a.transport == "inproc" and a.url != b.url and not any(n.process for n in a.nodes)
    ipc = sim_bench_graph(seed=3, url="ipc://bench-x")
    assert ipc.url == "ipc://bench-x" and all(n.process for n in ipc.nodes)
    assert ipc.nodes[0].params["seed"] == 3 and "seed" not in ipc.nodes[2].params  # skills learn it from sim/scene


def test_no_node_but_the_sim_takes_a_seed():
    for path in GRAPHS.glob("sim_bench*.toml"):
        for node in load_graph(path).nodes:
            assert ("seed" in node.params) == (node.name == "sim_arm"), (path.name, node.name)
