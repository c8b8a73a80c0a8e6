"""Lesson 8: the VGG network: D2L's vgg(conv_arch), the paper's configurations A-E, parameters and FLOPs."""
# %%
import io

import minivgg as mv
from minivgg import models, nn
from lesson import claim, exercises, notice, section

section("D2L's VGG-11 on a 224x224 Fashion-MNIST image")
net = models.vgg(models.CONV_ARCH)
rows = mv.summary(net, (1, 1, 224, 224))
claim([r[1] for r in rows[:5]] == [(1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28), (1, 512, 14, 14),
                                   (1, 512, 7, 7)], "each block halves height and width: 224 -> 7 after five")
claim(rows[-1][1] == (1, 10), "and the dense part ends in 10 class scores")

# %%
section("Why the printout is shorter than the network is deep")
convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
dense = [m for m in net.modules() if isinstance(m, nn.Linear)]
weighted = [r[0] for r in rows if r[2] > 0]
print(f"  {len(rows)} lines in the printout, {len(weighted)} of them with parameters: {', '.join(weighted)}")
claim(len(convs) == 8 and len(dense) == 3, "VGG-11 has 11 weight layers: 8 convolutions and 3 dense layers")
claim(weighted == ["Sequential"] * 5 + ["LazyLinear"] * 3, "but the printout has 8 lines with parameters, 5 blocks "
      "and 3 dense layers: the 8 convolutions sit inside the 5 blocks, one line each")

# %%
section("The paper's Table 1 and Table 2")
# depth (Table 1) and parameters (Table 2 rounds them to millions)
expected = {"A": (11, 132_863_336), "A-LRN": (11, 132_863_336), "B": (13, 133_047_848), "C": (16, 133_638_952),
            "D": (16, 138_357_544), "E": (19, 143_667_240)}
for name, (depth, count) in expected.items():
    cfg = models.vgg_from_config(name, num_classes=1000, in_channels=3)
    mv.summary(cfg, (1, 3, 224, 224), file=io.StringIO())
    layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in cfg.modules())
    print(f"  {name:<5} {layers} weight layers, {cfg.num_parameters():,} parameters")
    claim(layers == depth and cfg.num_parameters() == count,
          f"configuration {name}: {depth} weight layers as in Table 1, {count / 1e6:.0f} million parameters as in "
          "Table 2")
    if name == "A":
        a = cfg  # VGG-11, for the next section

# %%
section("Where the parameters are, and where the work is (VGG-11, 224x224x3)")
flops = models.count_flops(a, (1, 3, 224, 224))
conv_flops, dense_flops = flops["conv"], flops["dense"]
conv_params = sum(p.numel() for m in a.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
dense_params = sum(p.numel() for m in a.modules() if isinstance(m, nn.Linear) for p in m.parameters())
print(f"  convolutions: {conv_params / 1e6:.1f} M parameters, {conv_flops / 1e9:.1f} GFLOPs")
print(f"  dense layers: {dense_params / 1e6:.1f} M parameters, {dense_flops / 1e9:.2f} GFLOPs")
param_share = dense_params / (conv_params + dense_params)
flop_share = conv_flops / (conv_flops + dense_flops)
claim(conv_params + dense_params == a.num_parameters() and param_share > 0.9,
      f"the three dense layers hold {param_share:.1%} of the parameters")
claim(flop_share > 0.98, f"but the convolutions do {flop_share:.1%} of the arithmetic")

notice("Each block halves the image; after five, a 224x224 image is 7x7, and the first dense layer reads all "
       "7 x 7 x 512 of it.",
       "The dense layers, the first above all, hold the parameters; the convolutions, applied at every pixel, "
       "do the work.",
       "Deeper configurations (A to E) add convolutions, which adds few parameters: 133 to 144 million.")

exercises("Print the summary of configuration E. How many lines, how many weight layers?",
          "Fashion-MNIST images are 28x28. What is the smallest resize that survives five poolings?",
          "D2L's exercise: change conv_arch to build VGG-16 and VGG-19 from vgg() alone.")
