"""The split-computing methods (NAIR, ReBEL, RoCoIn, Adaptive ResNet) as tinysplit implements them."""
