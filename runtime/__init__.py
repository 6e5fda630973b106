"""What every servemesh server shares: lifecycle, health, reflection and error mapping."""
