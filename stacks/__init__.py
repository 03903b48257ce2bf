"""CDK Terrain stacks and constructs for the GPU batch platform.

Importing this package is cheap; the provider bindings load only when `stacks.provider` (or a
construct module that needs it) is imported.
"""

import os

# jsii prints a large end-of-life banner on Node 20 when its runtime starts (the first import
# of `constructs` or a provider module); the tools work, so keep it out of users' way.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
