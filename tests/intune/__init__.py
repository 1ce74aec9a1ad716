"""Tests of the Intune client against the Intune simulator over real HTTPS sockets."""
