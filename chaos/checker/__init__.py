"""The independent invariant checker of the chaos suite.

It imports nothing from ``gun_hub``, ``adapters`` or ``partner_sim`` (a unit test scans
its imports): it reads the topics with confluent-kafka, opens envelopes with jwcrypto,
parses decision XML from the contract, reads the partners' ledgers over their admin HTTP
API and runs ``gun-hub audit verify`` as a separate process. Run it alone on a finished
run with ``python -m chaos.checker --run DIR`` (``docs/chaos.md``).
"""

from chaos.checker.invariants import CheckReport, Row, check
from chaos.checker.model import Observations, Submission
from chaos.checker.sources import LiveSource, MemorySource, Source, observe

__all__ = [
    "CheckReport",
    "LiveSource",
    "MemorySource",
    "Observations",
    "Row",
    "Source",
    "Submission",
    "check",
    "observe",
]
