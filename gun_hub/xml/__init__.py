"""XML at the edges: safe parsing of declarations, rendering of decisions."""
