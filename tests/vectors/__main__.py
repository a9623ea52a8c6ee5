from . import VECTORS_FILE, write_pinned

write_pinned()
print(f"wrote {VECTORS_FILE}")
