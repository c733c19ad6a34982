"""Loss components, one file each (det, seg, boundary, distill), registered in domain/registry.py.

A component carries its name, its config knobs (weight, clip, warm-up ramp) and its compute function over
apex_x.kernels. Layer: below application and adapters, above kernels (imports kernels and domain only).
A new component is one file here plus its line in LOSS_COMPONENTS.
"""
