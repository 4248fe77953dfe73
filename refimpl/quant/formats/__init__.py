"""One module per format family; each lists its ``QuantFormat`` descriptors in ``FORMATS``."""
