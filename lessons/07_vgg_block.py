"""Lesson 7: the VGG block: a few 3x3 convolutions with padding 1 and ReLU, then 2x2 max-pooling."""
# %%
import numpy as np

import minivgg as mv
from minivgg import models, nn
from lesson import claim, exercises, notice, section

section("vgg_block(num_convs, out_channels)")
block = models.vgg_block(2, 128)
print(block)
convs = [m for m in block if isinstance(m, nn.Conv2d)]
claim(len(convs) == 2 and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs),
      "two 3x3 convolutions with padding 1")
claim(isinstance(block[-1], nn.MaxPool2d) and block[-1].kernel_size == 2, "and one 2x2 max-pooling at the end")

# %%
section("Shapes through the block")
x = mv.tensor(np.zeros((1, 64, 56, 56)))
for layer in block:
    x = layer(x)
    print(f"  {type(layer).__name__:<11} -> {x.shape}")
claim(x.shape == (1, 128, 28, 28), "the convolutions keep 56x56 and set 128 channels; pooling halves to 28x28")
claim(convs[0].weight.shape == (128, 64, 3, 3), "the first (lazy) convolution read its 64 input channels "
      "from the first batch, as D2L's LazyConv2d does")
params = sum(p.numel() for p in block.parameters())
per_conv = [sum(p.numel() for p in conv.parameters()) for conv in convs]
print(f"  parameters: {params:,} in the block, {per_conv[0]:,} and {per_conv[1]:,} in its two convolutions")
claim(per_conv == [64 * 9 * 128 + 128, 128 * 9 * 128 + 128] and params == sum(per_conv),
      "each convolution has in x 3 x 3 x out weights and out biases; ReLU and pooling have no parameters")

notice("A block changes the number of channels only in its convolutions and the size of the map only in its "
       "pooling.",
       "Padding 1 is what lets the 3x3 convolutions keep 56x56; without it each would shave off a pixel on every side.",
       "The second convolution has almost twice the parameters of the first: it reads 128 channels instead of 64.")

exercises("Build vgg_block(3, 256) and print the shapes for a 56x56x128 input.",
          "Why halve the spatial size and double the channels at each block? Compute the FLOPs per block.",
          "Replace the max-pooling with a stride-2 convolution. How many parameters does that add?")
