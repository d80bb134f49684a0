import json

import torch

from loopylab.lab.evaluation import parse_seeds
from loopylab.nanochat.checkpoint import load_checkpoint
from loopylab.nanochat.data import NotebookBatches, encode_all, read_shards, write_shards
from loopylab.nanochat.train import evaluate_bpb, preset, train


def test_tiny_preset_loss_decreases_and_checkpoint_loads(tmp_path, notebooks, tokenizer):
    cfg = preset("tiny", steps=40, eval_every=0, batch_size=8)
    result = train(cfg, notebooks[:120], notebooks[120:], out_dir=tmp_path, tokenizer=tokenizer, progress=False)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert result.val_bpb is not None and 0 < result.val_bpb < 3
    assert result.tokens_per_s > 0 and result.mfu is None  # no MFU on CPU
    model, tok, meta = load_checkpoint(tmp_path)
    assert meta["step"] == 40 and abs(meta["val_bpb"] - result.val_bpb) < 1e-9
    rows = encode_all(tok, notebooks[120:], model.config.sequence_len)
    assert abs(evaluate_bpb(model, rows, tok.token_bytes(), tok.bos_id) - result.val_bpb) < 1e-4


def test_training_writes_its_loss_and_bpb_history_beside_the_checkpoint(tmp_path, notebooks, tokenizer):
    import csv

    cfg = preset("tiny", steps=6, eval_every=3, batch_size=4)
    result = train(cfg, notebooks[:40], notebooks[120:140], out_dir=tmp_path, tokenizer=tokenizer, progress=False)
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert [float(r["train_loss"]) for r in rows] == [round(v, 6) for v in result.losses]
    bpbs = {int(r["step"]): float(r["val_bpb"]) for r in rows if r["val_bpb"]}
    assert sorted(bpbs) == [3, 6] and abs(bpbs[6] - result.val_bpb) < 1e-5
    png = (tmp_path / "history.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_batches_mask_only_model_written_targets(tokenizer, notebooks):
    rows = encode_all(tokenizer, notebooks[:10], 1024)
    x, y, m = next(iter(NotebookBatches(rows, 4, tokenizer.bos_id)))
    assert x.shape == y.shape == m.shape and x.shape[0] == 4
    assert torch.equal(x[:, 1:][m[:, :-1] > 0], y[:, :-1][m[:, :-1] > 0])  # targets are shifted inputs
    forced = {tokenizer.section_ids(k)[0] for k in ("observation", "belief", "question", "scene")}
    assert not any(int(t) in forced for t in y[m > 0])
    written = {tokenizer.section_ids(k)[1] for k in ("experiment", "conclusion")}
    assert written <= {int(t) for t in y[m > 0]}


def test_shards_round_trip_and_seed_specs(tmp_path):
    recs = [{"seed": i, "text": f"n{i}"} for i in range(5)]
    write_shards(recs, tmp_path, "train", shard_size=2)
    assert len(list(tmp_path.glob("train_*.jsonl.gz"))) == 3
    assert read_shards(tmp_path, "train") == recs
    assert parse_seeds("0:3,10") == [0, 1, 2, 10]
    (tmp_path / "val_00000.jsonl").write_text(json.dumps({"a": 1}) + "\nnot json\n")
    try:
        read_shards(tmp_path, "val")
    except ValueError as e:
        assert "val_00000.jsonl:2" in str(e)
    else:
        raise AssertionError("bad JSON line accepted")


def test_journal_resume_and_dataset_split(tmp_path):
    from loopylab.nanochat.data import read_journal, write_dataset

    journal = tmp_path / "journal.jsonl"
    recs = [{"seed": s, "kind": "mass", "text": f"t{s}", "success": s % 2 == 0} for s in (1, 9, 19, 20)]
    recs.append({"seed": 3, "kind": "mass", "failed": "crash"})
    journal.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"seed": 4, "ki')  # cut short
    got = read_journal(journal)
    assert got == recs
    summary = write_dataset(got + [dict(recs[0], text="newer")], tmp_path)
    assert summary == {"train": 2, "val": 2, "failed": 1, "success_rate": 0.25}
    assert [r["seed"] for r in read_shards(tmp_path, "val")] == [9, 19]
    assert read_shards(tmp_path, "train")[0]["text"] == "newer"  # the latest record of a world wins
