"""Print every preset's parameter count and FLOPs per network evaluation.

    python -m vdm_ref.support.presets

FLOPs are those of `vdm_ref.network.flops` (2 × multiply-adds of convolutions, dense layers
and attention matmuls) for one evaluation of one video at the preset's frames and resolution.
Parameters are counted from shapes (`vdm_ref.network.count_params`): nothing is allocated, so
the billion-parameter presets print instantly.
"""

from ..configs import PRESETS
from ..network import count_params, flops

__mirror__ = False


def preset_table() -> str:
    """The preset table as Markdown (the table in docs/network.md)."""
    rows = [("| preset | video F×S×S×C, frameskip | channels × (M1..MK), N | attention res. | "
             "head dim | conditioning | target | parameters | GFLOPs / eval |"),
            "|---|---|---|---|---|---|---|---:|---:|"]
    for name, cfg in PRESETS.items():
        u = cfg.unet
        mult = ",".join(str(m) for m in u.channel_mult)
        attn = ",".join(str(r) for r in u.attn_resolutions)
        cond = u.conditioning if u.conditioning != "class" else f"class ({u.num_classes})"
        patch = f" on {u.patch_size}×{u.patch_size} patches" if u.patch_size > 1 else ""
        rows.append(f"| {name} | {u.frames}×{u.image_size}×{u.image_size}×{u.in_channels}, {u.frameskip} | "
                    f"{u.channels} × ({mult}), {u.num_res_blocks}{patch} | {attn} | {u.head_dim} | "
                    f"{cond} | {u.target} | {count_params(u):,} | {flops(u) / 1e9:,.2f} |")
    return "\n".join(rows)


def main() -> None:
    """Print `preset_table()`."""
    print(preset_table())


if __name__ == "__main__":
    main()
