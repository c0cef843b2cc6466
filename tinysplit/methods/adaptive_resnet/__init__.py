"""Adaptive ResNet: residual blocks skipped on the device by a runtime mask that a host planner sets."""
