"""Plain-torch transcriptions of the seed recipes' published loss code (the "twins").

Each twin follows its source line by line, quirks included, and shares nothing with nst_exp:
torchvision's VGG19 ``features`` rebuilt from nn layers (ReLU(inplace=True), as torchvision
builds it), the recipe's own input normalisation, its own loop over layers, its own sums and
means. tests/test_twins.py runs each against its preset on the same weights and pixels.

Sources (read through the project's reference search; quoted as code, not copied verbatim):
- PyTorch tutorial "Neural Transfer Using PyTorch" (advanced/neural_style_tutorial.py)
- d2l-en chapter_computer-vision/neural-style.md, pytorch tab (d2l.ai ch. 14.12)
- yunjey/pytorch-tutorial tutorials/03-advanced/neural_style_transfer/main.py
- apache/mxnet example/neural-style/run.py (the lr 0.1 / remove-noise 0.2 version) with
  model_vgg19.py
Each twin returns ``{"content", "style", "tv"}``: the recipe's *weighted* terms as scalars.
``yunjey_images`` transcribes yunjey's image loading too (a transposed style shape hides there).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def torchvision_features(state: dict[str, Tensor], pool: type[nn.Module] = nn.MaxPool2d) -> nn.Sequential:
    """torchvision.models.vgg19().features: Conv2d, ReLU(inplace=True), MaxPool2d, loaded from ``state``."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19:
        if item == "M":
            layers.append(pool(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    net = nn.Sequential(*layers)
    net.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})
    return net.eval().requires_grad_(False)


def imagenet_normalize(image: Tensor) -> Tensor:
    """transforms.Normalize(mean, std) on a [0, 1] RGB tensor."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


# --- PyTorch tutorial -------------------------------------------------------------------------
def tutorial(state: dict[str, Tensor], x: Tensor, content: Tensor, style: Tensor) -> dict[str, Tensor]:
    """get_style_model_and_losses + the closure: Normalization first, ReLUs replaced by
    out-of-place ones, ContentLoss after conv_4, StyleLoss after conv_1..conv_5, net cut after
    the last loss; F.mse_loss everywhere, gram / (a*b*c*d); the losses summed, style x 1e6."""
    cnn = torchvision_features(state)
    content_layers, style_layers = ["conv_4"], ["conv_1", "conv_2", "conv_3", "conv_4", "conv_5"]

    def run(img: Tensor) -> dict[str, Tensor]:
        out, i = {}, 0
        h = imagenet_normalize(img)
        for layer in cnn.children():
            if isinstance(layer, nn.Conv2d):
                i += 1
                name = f"conv_{i}"
            elif isinstance(layer, nn.ReLU):
                name, layer = f"relu_{i}", nn.ReLU(inplace=False)
            else:
                name = f"pool_{i}"
            h = layer(h)
            out[name] = h
            if name == "conv_5":
                break
        return out

    def gram(t: Tensor) -> Tensor:
        a, b, c, d = t.size()
        features = t.view(a * b, c * d)
        return torch.mm(features, features.t()).div(a * b * c * d)

    with torch.no_grad():
        target_c, target_s = run(content), run(style)
    feats = run(x)
    style_score = sum(F.mse_loss(gram(feats[n]), gram(target_s[n])) for n in style_layers)
    content_score = sum(F.mse_loss(feats[n], target_c[n]) for n in content_layers)
    return {"content": content_score * 1, "style": style_score * 1e6, "tv": torch.zeros(())}


# --- d2l ----------------------------------------------------------------------------------------
def d2l(state: dict[str, Tensor], x: Tensor, content: Tensor, style: Tensor) -> dict[str, Tensor]:
    """extract_features over features[:29] appends conv outputs that the in-place ReLU then
    overwrites; compute_loss with sum(10 * styles_l + contents_l + [tv_l]) on the normalised X."""
    style_layers, content_layers = [0, 5, 10, 19, 28], [25]
    pretrained_features = torchvision_features(state)
    net = nn.Sequential(*[pretrained_features[i] for i in range(max(content_layers + style_layers) + 1)])
    content_weight, style_weight, tv_weight = 1, 1e4, 10

    def extract_features(X: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        contents, styles = [], []
        for i in range(len(net)):
            X = net[i](X)
            if i in style_layers:
                styles.append(X)
            if i in content_layers:
                contents.append(X)
        return contents, styles

    def gram(X: Tensor) -> Tensor:
        num_channels, n = X.shape[1], X.numel() // X.shape[1]
        X = X.reshape((num_channels, n))
        return torch.matmul(X, X.T) / (num_channels * n)

    def tv_loss(Y_hat: Tensor) -> Tensor:
        return 0.5 * (torch.abs(Y_hat[:, :, 1:, :] - Y_hat[:, :, :-1, :]).mean() +
                      torch.abs(Y_hat[:, :, :, 1:] - Y_hat[:, :, :, :-1]).mean())

    with torch.no_grad():
        contents_Y, _ = extract_features(imagenet_normalize(content))
        _, styles_Y = extract_features(imagenet_normalize(style))
        styles_Y_gram = [gram(Y) for Y in styles_Y]
    X = imagenet_normalize(x)  # d2l optimises this tensor itself; same function of the pixels
    contents_Y_hat, styles_Y_hat = extract_features(X)
    contents_l = [torch.square(Y_hat - Y).mean() * content_weight for Y_hat, Y in zip(contents_Y_hat, contents_Y)]
    styles_l = [torch.square(gram(Y_hat) - Y).mean() * style_weight for Y_hat, Y in zip(styles_Y_hat, styles_Y_gram)]
    tv_l = tv_loss(X) * tv_weight
    total = sum(10 * styles_l + contents_l + [tv_l])  # the list, repeated ten times
    style_total = sum(10 * styles_l)
    assert torch.allclose(total, style_total + sum(contents_l) + tv_l)
    return {"content": sum(contents_l), "style": style_total, "tv": tv_l}


# --- yunjey ---------------------------------------------------------------------------------------
def yunjey(state: dict[str, Tensor], x: Tensor, content: Tensor, style: Tensor) -> dict[str, Tensor]:
    """VGGNet.forward over the whole features stack, selecting '0','5','10','19','28';
    content_loss += mean((f1 - f2)^2); style_loss += mean((G1 - G3)^2) / (c*h*w); style x 100."""
    vgg = torchvision_features(state)
    select = ["0", "5", "10", "19", "28"]

    def features(t: Tensor) -> list[Tensor]:
        out = []
        for name, layer in vgg._modules.items():
            t = layer(t)
            if name in select:
                out.append(t)
        return out

    target_features = features(imagenet_normalize(x))
    with torch.no_grad():
        content_features, style_features = features(imagenet_normalize(content)), features(imagenet_normalize(style))
    style_loss, content_loss = 0, 0
    for f1, f2, f3 in zip(target_features, content_features, style_features):
        content_loss += torch.mean((f1 - f2) ** 2)
        _, c, h, w = f1.size()
        f1, f3 = f1.view(c, h * w), f3.view(c, h * w)
        f1, f3 = torch.mm(f1, f1.t()), torch.mm(f3, f3.t())
        style_loss += torch.mean((f1 - f3) ** 2) / (c * h * w)
    return {"content": content_loss, "style": 100 * style_loss, "tv": torch.zeros(())}


def yunjey_load_image(image_path: str, max_size: int | None = None, shape: list[int] | None = None) -> Tensor:
    """main.py's load_image, then its ToTensor (its Normalize is the twin's imagenet_normalize):
    to ``max_size`` by the long side, the size truncated; then ``image.resize(shape)``, where
    PIL reads the [H, W] it is given as (width, height)."""
    image = Image.open(image_path)
    if max_size:
        scale = max_size / max(image.size)
        size = np.array(image.size) * scale
        image = image.resize(tuple(size.astype(int)), Image.Resampling.LANCZOS)  # ANTIALIAS = LANCZOS
    if shape:
        image = image.resize(tuple(shape), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def yunjey_images(content_path: str, style_path: str, max_size: int) -> tuple[Tensor, Tensor]:
    """main(): the content at max_size, the style at shape=[content.size(2), content.size(3)]."""
    content = yunjey_load_image(content_path, max_size=max_size)
    style = yunjey_load_image(style_path, shape=[content.size(2), content.size(3)])
    return content, style


# --- MXNet neural-style ---------------------------------------------------------------------------
MXNET_MEAN_RGB = (123.68, 116.779, 103.939)


def mxnet_net(state_bgr: dict[str, Tensor]) -> tuple[nn.Sequential, dict[int, str]]:
    """model_vgg19.get_symbol: the Caffe VGG19 with *average* pooling, outputs relu1_1..relu5_1
    (style) and relu4_2 (content). MXNet's converted vgg19.params take RGB input: the Caffe
    (BGR) first conv with its input channels swapped, as MXNet's caffe converter does."""
    state = dict(state_bgr)
    state["features.0.weight"] = state["features.0.weight"].flip(1)
    net = torchvision_features(state, pool=nn.AvgPool2d)[:30]  # up to relu5_1
    outputs = {1: "relu1_1", 6: "relu2_1", 11: "relu3_1", 20: "relu4_1", 22: "relu4_2", 29: "relu5_1"}
    return net, outputs


def mxnet(state_bgr: dict[str, Tensor], x: Tensor, content: Tensor, style: Tensor) -> dict[str, Tensor]:
    """run.py's gradient, written as MXNet computes it, plus the potential it descends.

    MXNet never evaluates a loss: it backpropagates head gradients. For each style layer the
    Gram is FullyConnected(data=X, weight=X) with grad_req "null" on the weight side, so only
    (G - A) X reaches X (half the gradient of 1/2 |G - A|^2), divided by C^2 * M and times
    style_weight; the content head gradient is (F - P) * content_weight. Those are the
    gradients of  content_weight/2 |F - P|^2  and  style_weight/4 |G - A|^2 / (C^2 M),  the
    terms returned. The backward below is MXNet's; the test checks both against the preset.
    """
    net, outputs = mxnet_net(state_bgr)
    content_weight, style_weight = 10.0, 1.0
    style_names = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]

    def preprocess(img: Tensor) -> Tensor:  # PreprocessContentImage: resized [0, 1] * 256 - mean, RGB
        return img * 256 - torch.tensor(MXNET_MEAN_RGB).view(1, 3, 1, 1)

    def forward(img: Tensor) -> dict[str, Tensor]:
        out, h = {}, preprocess(img)
        for i, layer in enumerate(net):
            h = layer(h) if not isinstance(layer, nn.ReLU) else F.relu(h)  # mx.symbol.Activation: a new output
            if i in outputs:
                out[outputs[i]] = h
        return out

    def gram_fc(conv: Tensor, weight: Tensor) -> Tensor:  # StyleGramExecutor: FullyConnected(data, weight)
        c = conv.shape[1]
        return conv.reshape(c, -1) @ weight.reshape(c, -1).T

    with torch.no_grad():
        s_feats, c_feats = forward(style), forward(content)
        style_array = [gram_fc(s_feats[n], s_feats[n]) for n in style_names]
        content_array = c_feats["relu4_2"]
    feats = forward(x)
    heads, grads, style_terms = [], [], []
    for name, target in zip(style_names, style_array):
        conv = feats[name]
        c, m = conv.shape[1], conv[0, 0].numel()
        gram = gram_fc(conv, conv.detach())  # weight side: grad_req "null"
        heads.append(gram)
        grads.append((gram.detach() - target) / (c**2 * m) * style_weight)
        style_terms.append(style_weight / 4 * (gram.detach() - target).square().sum() / (c**2 * m))
    heads.append(feats["relu4_2"])
    grads.append((feats["relu4_2"].detach() - content_array) * content_weight)
    torch.autograd.backward(heads, grads)
    content_term = content_weight / 2 * (feats["relu4_2"].detach() - content_array).square().sum()
    return {"content": content_term, "style": sum(style_terms), "tv": torch.zeros(())}
