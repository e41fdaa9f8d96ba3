"""Offline local stack: AWS emulator, API gateway, event pumps, PayMob simulator."""
