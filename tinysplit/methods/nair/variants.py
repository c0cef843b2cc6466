"""NAIR variant names (light: the CLI lists them without importing torch)."""

VARIANTS = ("original", "l1_order", "sum", "penalty", "nair")  # the paper's ablation: nair-eval's default
EXTRA_VARIANTS = ("clio",)  # comparisons run on request (--variants ...,clio)
ALL_VARIANTS = VARIANTS + EXTRA_VARIANTS
VARIANT_HELP = {
    "original": "the trained model, original channel order, no re-tuning",
    "l1_order": "importance (L1) order baked in, no re-tuning",
    "sum": "L1 order + re-tuning with the plain sum of slice losses (paper's 'baseline')",
    "penalty": "L1 order + re-tuning with the plain sum and the penalty P",
    "nair": "L1 order + re-tuning with the importance weights w_j and the penalty P (full NAIR)",
    "clio": "L1 order + CLIO-style progressive training, one tail per number of units (comparison)",
}
