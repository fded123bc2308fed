"""explore.run"""
