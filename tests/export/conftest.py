"""Fixtures of the export tests: detectron2's ResNet parameter names, written out from detectron2's own code."""

from __future__ import annotations

import pytest

# detectron2's ResNet-50 parameter and buffer names (detectron2/modeling/backbone/resnet.py: BasicStem.conv1,
# stages res2-res5 of 3/4/6/3 BottleneckBlocks with conv1-conv3 and, in block 0, a projection shortcut; every conv
# a detectron2 Conv2d whose FrozenBatchNorm2d is `norm`).
D2_R50 = """
    stem.conv1.weight stem.conv1.norm.weight stem.conv1.norm.bias stem.conv1.norm.running_mean
    stem.conv1.norm.running_var res2.0.shortcut.weight res2.0.shortcut.norm.weight res2.0.shortcut.norm.bias
    res2.0.shortcut.norm.running_mean res2.0.shortcut.norm.running_var res2.0.conv1.weight res2.0.conv1.norm.weight
    res2.0.conv1.norm.bias res2.0.conv1.norm.running_mean res2.0.conv1.norm.running_var res2.0.conv2.weight
    res2.0.conv2.norm.weight res2.0.conv2.norm.bias res2.0.conv2.norm.running_mean res2.0.conv2.norm.running_var
    res2.0.conv3.weight res2.0.conv3.norm.weight res2.0.conv3.norm.bias res2.0.conv3.norm.running_mean
    res2.0.conv3.norm.running_var res2.1.conv1.weight res2.1.conv1.norm.weight res2.1.conv1.norm.bias
    res2.1.conv1.norm.running_mean res2.1.conv1.norm.running_var res2.1.conv2.weight res2.1.conv2.norm.weight
    res2.1.conv2.norm.bias res2.1.conv2.norm.running_mean res2.1.conv2.norm.running_var res2.1.conv3.weight
    res2.1.conv3.norm.weight res2.1.conv3.norm.bias res2.1.conv3.norm.running_mean res2.1.conv3.norm.running_var
    res2.2.conv1.weight res2.2.conv1.norm.weight res2.2.conv1.norm.bias res2.2.conv1.norm.running_mean
    res2.2.conv1.norm.running_var res2.2.conv2.weight res2.2.conv2.norm.weight res2.2.conv2.norm.bias
    res2.2.conv2.norm.running_mean res2.2.conv2.norm.running_var res2.2.conv3.weight res2.2.conv3.norm.weight
    res2.2.conv3.norm.bias res2.2.conv3.norm.running_mean res2.2.conv3.norm.running_var res3.0.shortcut.weight
    res3.0.shortcut.norm.weight res3.0.shortcut.norm.bias res3.0.shortcut.norm.running_mean
    res3.0.shortcut.norm.running_var res3.0.conv1.weight res3.0.conv1.norm.weight res3.0.conv1.norm.bias
    res3.0.conv1.norm.running_mean res3.0.conv1.norm.running_var res3.0.conv2.weight res3.0.conv2.norm.weight
    res3.0.conv2.norm.bias res3.0.conv2.norm.running_mean res3.0.conv2.norm.running_var res3.0.conv3.weight
    res3.0.conv3.norm.weight res3.0.conv3.norm.bias res3.0.conv3.norm.running_mean res3.0.conv3.norm.running_var
    res3.1.conv1.weight res3.1.conv1.norm.weight res3.1.conv1.norm.bias res3.1.conv1.norm.running_mean
    res3.1.conv1.norm.running_var res3.1.conv2.weight res3.1.conv2.norm.weight res3.1.conv2.norm.bias
    res3.1.conv2.norm.running_mean res3.1.conv2.norm.running_var res3.1.conv3.weight res3.1.conv3.norm.weight
    res3.1.conv3.norm.bias res3.1.conv3.norm.running_mean res3.1.conv3.norm.running_var res3.2.conv1.weight
    res3.2.conv1.norm.weight res3.2.conv1.norm.bias res3.2.conv1.norm.running_mean res3.2.conv1.norm.running_var
    res3.2.conv2.weight res3.2.conv2.norm.weight res3.2.conv2.norm.bias res3.2.conv2.norm.running_mean
    res3.2.conv2.norm.running_var res3.2.conv3.weight res3.2.conv3.norm.weight res3.2.conv3.norm.bias
    res3.2.conv3.norm.running_mean res3.2.conv3.norm.running_var res3.3.conv1.weight res3.3.conv1.norm.weight
    res3.3.conv1.norm.bias res3.3.conv1.norm.running_mean res3.3.conv1.norm.running_var res3.3.conv2.weight
    res3.3.conv2.norm.weight res3.3.conv2.norm.bias res3.3.conv2.norm.running_mean res3.3.conv2.norm.running_var
    res3.3.conv3.weight res3.3.conv3.norm.weight res3.3.conv3.norm.bias res3.3.conv3.norm.running_mean
    res3.3.conv3.norm.running_var res4.0.shortcut.weight res4.0.shortcut.norm.weight res4.0.shortcut.norm.bias
    res4.0.shortcut.norm.running_mean res4.0.shortcut.norm.running_var res4.0.conv1.weight res4.0.conv1.norm.weight
    res4.0.conv1.norm.bias res4.0.conv1.norm.running_mean res4.0.conv1.norm.running_var res4.0.conv2.weight
    res4.0.conv2.norm.weight res4.0.conv2.norm.bias res4.0.conv2.norm.running_mean res4.0.conv2.norm.running_var
    res4.0.conv3.weight res4.0.conv3.norm.weight res4.0.conv3.norm.bias res4.0.conv3.norm.running_mean
    res4.0.conv3.norm.running_var res4.1.conv1.weight res4.1.conv1.norm.weight res4.1.conv1.norm.bias
    res4.1.conv1.norm.running_mean res4.1.conv1.norm.running_var res4.1.conv2.weight res4.1.conv2.norm.weight
    res4.1.conv2.norm.bias res4.1.conv2.norm.running_mean res4.1.conv2.norm.running_var res4.1.conv3.weight
    res4.1.conv3.norm.weight res4.1.conv3.norm.bias res4.1.conv3.norm.running_mean res4.1.conv3.norm.running_var
    res4.2.conv1.weight res4.2.conv1.norm.weight res4.2.conv1.norm.bias res4.2.conv1.norm.running_mean
    res4.2.conv1.norm.running_var res4.2.conv2.weight res4.2.conv2.norm.weight res4.2.conv2.norm.bias
    res4.2.conv2.norm.running_mean res4.2.conv2.norm.running_var res4.2.conv3.weight res4.2.conv3.norm.weight
    res4.2.conv3.norm.bias res4.2.conv3.norm.running_mean res4.2.conv3.norm.running_var res4.3.conv1.weight
    res4.3.conv1.norm.weight res4.3.conv1.norm.bias res4.3.conv1.norm.running_mean res4.3.conv1.norm.running_var
    res4.3.conv2.weight res4.3.conv2.norm.weight res4.3.conv2.norm.bias res4.3.conv2.norm.running_mean
    res4.3.conv2.norm.running_var res4.3.conv3.weight res4.3.conv3.norm.weight res4.3.conv3.norm.bias
    res4.3.conv3.norm.running_mean res4.3.conv3.norm.running_var res4.4.conv1.weight res4.4.conv1.norm.weight
    res4.4.conv1.norm.bias res4.4.conv1.norm.running_mean res4.4.conv1.norm.running_var res4.4.conv2.weight
    res4.4.conv2.norm.weight res4.4.conv2.norm.bias res4.4.conv2.norm.running_mean res4.4.conv2.norm.running_var
    res4.4.conv3.weight res4.4.conv3.norm.weight res4.4.conv3.norm.bias res4.4.conv3.norm.running_mean
    res4.4.conv3.norm.running_var res4.5.conv1.weight res4.5.conv1.norm.weight res4.5.conv1.norm.bias
    res4.5.conv1.norm.running_mean res4.5.conv1.norm.running_var res4.5.conv2.weight res4.5.conv2.norm.weight
    res4.5.conv2.norm.bias res4.5.conv2.norm.running_mean res4.5.conv2.norm.running_var res4.5.conv3.weight
    res4.5.conv3.norm.weight res4.5.conv3.norm.bias res4.5.conv3.norm.running_mean res4.5.conv3.norm.running_var
    res5.0.shortcut.weight res5.0.shortcut.norm.weight res5.0.shortcut.norm.bias res5.0.shortcut.norm.running_mean
    res5.0.shortcut.norm.running_var res5.0.conv1.weight res5.0.conv1.norm.weight res5.0.conv1.norm.bias
    res5.0.conv1.norm.running_mean res5.0.conv1.norm.running_var res5.0.conv2.weight res5.0.conv2.norm.weight
    res5.0.conv2.norm.bias res5.0.conv2.norm.running_mean res5.0.conv2.norm.running_var res5.0.conv3.weight
    res5.0.conv3.norm.weight res5.0.conv3.norm.bias res5.0.conv3.norm.running_mean res5.0.conv3.norm.running_var
    res5.1.conv1.weight res5.1.conv1.norm.weight res5.1.conv1.norm.bias res5.1.conv1.norm.running_mean
    res5.1.conv1.norm.running_var res5.1.conv2.weight res5.1.conv2.norm.weight res5.1.conv2.norm.bias
    res5.1.conv2.norm.running_mean res5.1.conv2.norm.running_var res5.1.conv3.weight res5.1.conv3.norm.weight
    res5.1.conv3.norm.bias res5.1.conv3.norm.running_mean res5.1.conv3.norm.running_var res5.2.conv1.weight
    res5.2.conv1.norm.weight res5.2.conv1.norm.bias res5.2.conv1.norm.running_mean res5.2.conv1.norm.running_var
    res5.2.conv2.weight res5.2.conv2.norm.weight res5.2.conv2.norm.bias res5.2.conv2.norm.running_mean
    res5.2.conv2.norm.running_var res5.2.conv3.weight res5.2.conv3.norm.weight res5.2.conv3.norm.bias
    res5.2.conv3.norm.running_mean res5.2.conv3.norm.running_var
""".split()

# ResNet-18: BasicBlocks (conv1, conv2), 2 per stage; res2's first block keeps 64 channels, so it has no shortcut.
D2_R18 = """
    stem.conv1.weight stem.conv1.norm.weight stem.conv1.norm.bias stem.conv1.norm.running_mean
    stem.conv1.norm.running_var res2.0.conv1.weight res2.0.conv1.norm.weight res2.0.conv1.norm.bias
    res2.0.conv1.norm.running_mean res2.0.conv1.norm.running_var res2.0.conv2.weight res2.0.conv2.norm.weight
    res2.0.conv2.norm.bias res2.0.conv2.norm.running_mean res2.0.conv2.norm.running_var res2.1.conv1.weight
    res2.1.conv1.norm.weight res2.1.conv1.norm.bias res2.1.conv1.norm.running_mean res2.1.conv1.norm.running_var
    res2.1.conv2.weight res2.1.conv2.norm.weight res2.1.conv2.norm.bias res2.1.conv2.norm.running_mean
    res2.1.conv2.norm.running_var res3.0.shortcut.weight res3.0.shortcut.norm.weight res3.0.shortcut.norm.bias
    res3.0.shortcut.norm.running_mean res3.0.shortcut.norm.running_var res3.0.conv1.weight res3.0.conv1.norm.weight
    res3.0.conv1.norm.bias res3.0.conv1.norm.running_mean res3.0.conv1.norm.running_var res3.0.conv2.weight
    res3.0.conv2.norm.weight res3.0.conv2.norm.bias res3.0.conv2.norm.running_mean res3.0.conv2.norm.running_var
    res3.1.conv1.weight res3.1.conv1.norm.weight res3.1.conv1.norm.bias res3.1.conv1.norm.running_mean
    res3.1.conv1.norm.running_var res3.1.conv2.weight res3.1.conv2.norm.weight res3.1.conv2.norm.bias
    res3.1.conv2.norm.running_mean res3.1.conv2.norm.running_var res4.0.shortcut.weight res4.0.shortcut.norm.weight
    res4.0.shortcut.norm.bias res4.0.shortcut.norm.running_mean res4.0.shortcut.norm.running_var res4.0.conv1.weight
    res4.0.conv1.norm.weight res4.0.conv1.norm.bias res4.0.conv1.norm.running_mean res4.0.conv1.norm.running_var
    res4.0.conv2.weight res4.0.conv2.norm.weight res4.0.conv2.norm.bias res4.0.conv2.norm.running_mean
    res4.0.conv2.norm.running_var res4.1.conv1.weight res4.1.conv1.norm.weight res4.1.conv1.norm.bias
    res4.1.conv1.norm.running_mean res4.1.conv1.norm.running_var res4.1.conv2.weight res4.1.conv2.norm.weight
    res4.1.conv2.norm.bias res4.1.conv2.norm.running_mean res4.1.conv2.norm.running_var res5.0.shortcut.weight
    res5.0.shortcut.norm.weight res5.0.shortcut.norm.bias res5.0.shortcut.norm.running_mean
    res5.0.shortcut.norm.running_var res5.0.conv1.weight res5.0.conv1.norm.weight res5.0.conv1.norm.bias
    res5.0.conv1.norm.running_mean res5.0.conv1.norm.running_var res5.0.conv2.weight res5.0.conv2.norm.weight
    res5.0.conv2.norm.bias res5.0.conv2.norm.running_mean res5.0.conv2.norm.running_var res5.1.conv1.weight
    res5.1.conv1.norm.weight res5.1.conv1.norm.bias res5.1.conv1.norm.running_mean res5.1.conv1.norm.running_var
    res5.1.conv2.weight res5.1.conv2.norm.weight res5.1.conv2.norm.bias res5.1.conv2.norm.running_mean
    res5.1.conv2.norm.running_var
""".split()


@pytest.fixture
def detectron2_names() -> dict[str, list[str]]:
    """detectron2's parameter and buffer names of a ResNet-50 and a ResNet-18, by architecture."""
    return {"resnet50": D2_R50, "resnet18": D2_R18}
