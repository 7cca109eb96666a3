"""Brightfield stains, in one place for plates (SA-beta-gal X-gal) and tissue (H-DAB, H&E).

- :mod:`imaging.stains.optical`: optical density (Beer-Lambert), stain matrices, colour
  deconvolution, Macenko estimation of stain vectors, angles between vectors;
- :mod:`imaging.stains.vectors`: the vectors an image is unmixed with (defaults, estimated,
  or ``auto``) and the stain amounts;
- :mod:`imaging.stains.white`: the white reference (a white point per image, or a surface
  from cell-free pixels).
"""
