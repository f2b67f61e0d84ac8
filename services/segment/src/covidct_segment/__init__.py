"""covidct segment stage. Research use only."""
