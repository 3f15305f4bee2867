"""The adapter kit: what every model adapter needs besides its model (parameters, threads, seeding,
validation groups, early stopping, gene resources), so that an adapter holds only its model."""
