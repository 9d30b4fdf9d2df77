"""Texture stages: UV sampling (T_uv), visibility (Eq. 4–5), screened Poisson (Eq. 6), coarse fill
(T_coarse, §3.1), multi-view stitch (T_refine, §3.2) and UV baking."""
