"""What the DeepSpeed training stages (SFT and DPO) share: engine set-up, LoRA, the schedule,
in-run checkpoints, the consolidated export and the Ray Train launch. The stages' own loops live
in `temporal_ray.sft` and `temporal_ray.dpo`."""
