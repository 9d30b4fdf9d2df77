"""GAN inversion (MvInvert §3.2): StyleGAN2 generator, ReStyle residual encoders (Eq. 2–3),
latent optimisation fallback, FFHQ alignment of rendered views, and the :class:`Inverter` facade."""
