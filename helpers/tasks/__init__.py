"""What depends on the task (classify, detect): images in, raw outputs scored, the noise rule every comparison uses."""
