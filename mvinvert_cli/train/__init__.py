"""Training of the residual encoder end to end (MvInvert §3.3): losses, discriminators, data, loop."""
