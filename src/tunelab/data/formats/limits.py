"""Size limits every reader obeys; read at call time (`limits.MAX_RECORD`), so a test may lower them."""

import codecs
import csv

BOM = codecs.BOM_UTF8
CHUNK = 1 << 20
MAX_RECORD = 64 << 20  # a single line/element larger than this is reported, not loaded
# A Parquet page is decompressed whole before any cell in it can be looked at, so a page larger than
# this is refused from its header: a 10 KB file can hold a 300 MB cell of repeated text.
MAX_PAGE = 2 * MAX_RECORD
csv.field_size_limit(MAX_RECORD)
