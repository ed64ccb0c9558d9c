"""Staff paging off-console: staff channels, page acknowledgement by link or SMS reply code.

See :mod:`gateway.paging.channels` (the staff channel list), :mod:`gateway.paging.tokens`
(pure: signed links, reply codes, phone numbers) and :mod:`gateway.paging.acks`
(acknowledging a page as its user through the workflow service).
"""
