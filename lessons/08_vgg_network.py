"""Lesson 8: the VGG network: D2L's vgg(conv_arch), the paper's configurations A-E, parameters and FLOPs."""
# %%
import io


import minivgg as mv
from minivgg import models, nn
from lesson import claim, exercises, section

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
blocks = [r for r in rows if r[0] == "Sequential"]
claim(len(convs) + len(dense) == 11, "VGG-11 has 11 weight layers: 8 convolutions and 3 dense layers")
claim(len(blocks) == 5, "but the 8 convolutions sit inside 5 blocks, and the printout shows one line per block: "
      "that is where D2L's missing layers went")

# %%
section("The paper's Table 1 and Table 2")
expected = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "C": 133_638_952, "D": 138_357_544,
            "E": 143_667_240}
for name, count in expected.items():
    cfg = models.vgg_from_config(name, num_classes=1000, in_channels=3)
    mv.summary(cfg, (1, 3, 224, 224), file=io.StringIO())
    layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in cfg.modules())
    claim(cfg.num_parameters() == count, f"configuration {name}: {layers} weight layers, {count / 1e6:.0f} million "
          "parameters, as in Table 2")

# %%
section("Where the parameters are, and where the work is (VGG-11, 224x224x3)")
a = models.vgg_from_config("A", 1000, 3)
flops = models.count_flops(a, (1, 3, 224, 224))
conv_flops, dense_flops = flops["conv"], flops["dense"]
conv_params = sum(p.size for m in a.modules() if isinstance(m, nn.Conv2d) for p in m.parameters())
dense_params = a.num_parameters() - conv_params
print(f"  convolutions: {conv_params / 1e6:.1f} M parameters, {conv_flops / 1e9:.1f} GFLOPs")
print(f"  dense layers: {dense_params / 1e6:.1f} M parameters, {dense_flops / 1e9:.2f} GFLOPs")
claim(dense_params > 10 * conv_params, "the three dense layers hold over 90% of the parameters")
claim(conv_flops > 50 * dense_flops, "but the convolutions do almost all the arithmetic")

exercises("Print the summary of configuration E. How many lines, how many weight layers?",
          "Fashion-MNIST images are 28x28. What is the smallest resize that survives five poolings?",
          "D2L's exercise: change conv_arch to build VGG-16 and VGG-19 from vgg() alone.")
