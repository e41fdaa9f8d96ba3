"""The pure domain: payment rules, money and PayMob signatures, with no I/O."""
