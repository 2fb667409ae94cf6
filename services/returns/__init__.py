"""Returns front door: buyers ask to return order lines; the policy decides; the saga starts."""
