"""The AsyncAPI 3.0 document of every topic, generated from the topic registry.
May import: gun_contract and gun_hub (examples are made with the real code).

``document`` assembles it (servers, channels, operations) and writes it as YAML;
``messages`` says what each topic carries (key, headers, payload); ``payloads`` holds the
value schemas, from the pydantic models; ``examples`` writes examples with the real code.
``gun-hub asyncapi`` writes ``schemas/asyncapi.yaml``; ``--check`` tells when it is stale.
"""

from __future__ import annotations

from gun_tools.asyncapi.document import Deployment, UndocumentedTopic, build_document, render_yaml

__all__ = ["Deployment", "UndocumentedTopic", "build_document", "render_yaml"]
