"""explore.engine"""
