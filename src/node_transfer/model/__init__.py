"""The model: timm backbones, the FC and NODE heads, the transfer model that joins them, and the data (datasets and
batches of image tensors). Built on `numerics` and `core`."""
