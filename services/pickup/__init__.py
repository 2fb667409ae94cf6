"""Pickup service: books pickups with the carrier and turns its signed callbacks into events."""
