"""CITES adapter: CITES permits, import notifications, (re-)export documents.
May import: gun_contract and adapters.base.

Codes: C638 import permit, C639 import notification, C400 certificate, C401 and C402
(re-)export documents. The management authority's permit register exposes quantity
management in the CERTEX style (a permit's lines are specimens or kilograms, written off
as goods are cleared), so the adapter is the shared HTTP client with the CITES identity.

Processing guarantee: at-least-once delivery, idempotent effect.
"""

from adapters.base.certex import CertexHttpPartner
from adapters.base.spec import AdapterSpec

ADAPTER = AdapterSpec(
    authority="cites",
    partner_name="CITES permit register (ministry of ecology)",
    processing_guarantee="at-least-once delivery, idempotent effect",
    build_partner=CertexHttpPartner,
)
