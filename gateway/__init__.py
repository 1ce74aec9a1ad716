"""The enrollment gateway's core: one CA core behind one door for every protocol."""
