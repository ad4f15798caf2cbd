"""Development tooling: demo, local broker, process group, generators, clearance stand-in.
May import: gun_contract, gun_hub, adapters, partner_sim. Not installed in the image."""
