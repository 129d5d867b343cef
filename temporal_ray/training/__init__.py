"""What the DeepSpeed training stages (SFT and DPO) share: engine set-up, LoRA, the schedule,
in-run checkpoints, the consolidated export, the Ray Train launch and the training loop itself
(`loop`), which the two recipes (`sft_recipe`, `dpo_recipe`) fill in with their data and loss."""
