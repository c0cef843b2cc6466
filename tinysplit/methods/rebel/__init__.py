"""ReBEL (papers/rebel.md): a variational bottleneck with an early Gaussian-mixture classifier.

- ``model``: Head1 (device: convs -> mu, log sigma^2 on a 1x1 map), Head2 (host), reparameterization (torch)
- ``gmc``: the Gaussian Mixture Classifier (full / diagonal covariance, Achlioptas projection) and
  the KL regularization to the true class's closest component (torch)
- ``classifiers``: the comparison early classifiers: linear + softmax, k-means, k-NN
- ``train``: the joint training (mimic + KL + early NLL), then Head2 + Tail fine-tuning (torch)
- ``gdn``: Generalized Divisive Normalization, kept for the export probe (docs/rebel.md)
- ``devicemodel``: Head1 + GMC as one int8-friendly device model, output [z, s * gamma] (torch)
- ``decision``: the device's early-exit rule on the int8 output (numpy)
- ``coverage``: coverage and local/remote/overall accuracy over thresholds and at equal coverage (numpy)
- ``plan``: a rebel bundle's layout, quantization and threshold as the device's integer (numpy)
- ``devicesim``: the one frame a device sends per sample (the reference for the C app)
- ``reference``: the reference pipeline's path and label per sample at a threshold
- ``export``: the ``rebel`` bundle (device model + Head2 + Tail + method_data.rebel) and the int8
  pipeline's predictions
- ``variants``: variant names (light)
- ``evaluate``, ``command``: ``tinysplit rebel-eval``

This file imports nothing heavy.
"""
