"""XML at the edges: safe parsing of declarations, rendering of decisions.
May import: gun_contract, lxml and xmlschema."""
