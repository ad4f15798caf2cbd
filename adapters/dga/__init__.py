"""DGA adapter: war-material export licences checked through SIGALE.
May import: gun_contract and adapters.base.

The licence code must come from configuration (routing table or
``GUN_HUB_HUB__EXTRA_ROUTES``). Licence data is confidential: requests are encrypted to
the DGA alone, and nothing of a licence but its verdict leaves this adapter.

Processing guarantee: at-least-once delivery, idempotent effect.
"""

from adapters.base.certex import CertexHttpPartner
from adapters.base.spec import AdapterSpec

ADAPTER = AdapterSpec(
    authority="dga",
    partner_name="SIGALE (DGA)",
    processing_guarantee="at-least-once delivery, idempotent effect",
    build_partner=CertexHttpPartner,
)
