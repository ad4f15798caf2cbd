"""DGAL adapter: sanitary and phytosanitary documents checked through TRACES.
May import: gun_contract and adapters.base.

Codes: CHED-A (C640), CHED-P (N853), CHED-D (C678), CHED-PP (C085), phytosanitary
certificate (N851), organic COI (C644). TRACES exposes quantity management in the CERTEX
style, so the adapter is the shared HTTP client with DGAL's identity.

Processing guarantee: at-least-once delivery, idempotent effect. A redelivered request
restates the same position at TRACES and yields the same answer.
"""

from adapters.base.certex import CertexHttpPartner
from adapters.base.spec import AdapterSpec

ADAPTER = AdapterSpec(
    authority="dgal",
    partner_name="TRACES (DGAL)",
    processing_guarantee="at-least-once delivery, idempotent effect",
    build_partner=CertexHttpPartner,
)
