"""The demo (``gun-hub demo``): the whole pipeline on one machine, the decisions printed.
May import: gun_contract, gun_hub and gun_tools.

``samples`` reads the sample declarations and chains each declaration's versions,
``run`` starts the components and exchanges the samples for decisions, ``report`` is what
gets printed (a confidential authority's references masked).
"""

from gun_tools.demo.run import DemoFailed, DemoResult, run_demo
from gun_tools.demo.samples import samples_dir, with_reference

__all__ = ["DemoFailed", "DemoResult", "run_demo", "samples_dir", "with_reference"]
