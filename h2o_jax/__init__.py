"""h2o_jax: H2ONet (CVPR 2023) hand mesh reconstruction in JAX/Flax.

Subpackages: ``ops`` (pure array functions), ``hand`` (hand models, mesh topology),
``render`` (rasteriser, occlusion labels), ``nn`` (Flax modules).
"""

__version__ = "0.1.0"
