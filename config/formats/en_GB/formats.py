"""One date format on every page (issue 12: pages mixed "2 Dec 2026, 9:07 p.m.", "2026-12-02 21:07" and
"2026-12-02"): ISO dates and a 24-hour clock, as MSPs and their customers' auditors write them.

Django's localisation would otherwise apply en-gb's own formats to every bare `{{ datetime }}`.
"""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
FIRST_DAY_OF_WEEK = 1  # Monday, as the maintenance window and the verify schedule
DATE_INPUT_FORMATS = ["%Y-%m-%d", "%d/%m/%Y"]
DATETIME_INPUT_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%d/%m/%Y %H:%M"]
TIME_INPUT_FORMATS = ["%H:%M:%S", "%H:%M"]
