"""Development and test tooling (demo, local broker, process group, generators, the
clearance stand-in); not in the image. May import: gun_contract, gun_hub, adapters."""
