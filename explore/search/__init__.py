"""explore.search"""
