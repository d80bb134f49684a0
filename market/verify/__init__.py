"""The verification pipeline every submission goes through before a human sees it.

Checks, in order (each yields one `{"name", "ok", "detail", "status"}` result, all stored and shown;
status is pass, fail, or unavailable for a check that could not run here):
  manifest   the manifest is for this bounty, lists at most MAX_FILES distinct files uploaded by the
             contributor, and each file's stored bytes hash to the declared sha256 and size
  signature  the manifest is signed by a rig key registered to the contributor (and verified, where the
             market asks for verified rigs)
  parse      every .mcap parses and carries the bounty's declared topics; every notebook parses under
             the lab grammar (world.notebook)
  bounds     hard physical bounds on every message, whatever the bounty declared (bounds.py)
  (declared) the physical checks the bounty declared: ranges, monotonic stamps, rates, notebook values
  twin       the sim twin replays the recorded commands and checks the recorded sensors (twin.py: a
             plug-in of the `loopylab.verifiers` group; "unavailable" without one)
  duplicate  no file identical to one in an earlier submission; content not a near-copy (dupes.py)

Modules: decode (reading recordings), bounds, declared, twin, dupes, pipeline (the order above).
"""

from loopylab.market.verify.declared import CHECK_KINDS, plausibility
from loopylab.market.verify.decode import field_value, read_mcap
from loopylab.market.verify.pipeline import MAX_FILES, Context, Result, complete, run

__all__ = [
    "CHECK_KINDS",
    "MAX_FILES",
    "Context",
    "Result",
    "complete",
    "field_value",
    "plausibility",
    "read_mcap",
    "run",
]
