"""SFT: M0 = SFT(base model, IFT + EFT) on the same DeepSpeed machinery as the DPO stage."""
