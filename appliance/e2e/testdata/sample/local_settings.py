# Developer-only settings: never part of the egg (the seed's "Local settings").
LOCAL_ONLY = True
