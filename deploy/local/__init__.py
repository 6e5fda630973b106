"""`make up` on one machine: the processes it starts, and meshctl, which starts them."""
