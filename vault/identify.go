package vault

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"tagwatch/vault/seal"
)

// What sits at the vault path is identified before bbolt opens it
// (identify), because bbolt trusts the file: it writes two header pages
// into an empty file, maps a file cut short and faults on the first page
// past its end, and panics on a page that is not what its parent says.
// Nothing here writes; a file found wanting is left byte for byte as it is.

// ErrBadFile means the vault path holds something that is not a usable
// vault file: a file cut short, empty, of another program, with damaged
// pages, or no file at all (a directory, a FIFO, ...). The error is a
// *BadFileError saying what was found.
var ErrBadFile = errors.New("vault: the vault file is damaged or is not a vault")

// BadFileError says what was found at the vault path instead of a usable
// vault, and what to do. errors.Is(err, ErrBadFile) holds for it.
type BadFileError struct {
	// Path is the vault path.
	Path string
	// Found says what is there, as a predicate of the path: "is cut short:
	// 8192 bytes, its header says 65536 (16 pages of 4096 bytes)".
	Found string
	// Hint says what to do about it.
	Hint string
	// Err is a more particular cause, or nil: ErrNoKeyring for a bbolt
	// file of another program.
	Err error
}

func (e *BadFileError) Error() string {
	return "vault file " + e.Path + " " + e.Found + "; " + e.Hint
}

// Is makes errors.Is(err, ErrBadFile) hold.
func (e *BadFileError) Is(target error) bool { return target == ErrBadFile }

// Unwrap returns the particular cause, if any.
func (e *BadFileError) Unwrap() error { return e.Err }

const (
	hintRestore = "restore the vault from a backup (tagwatchd has not changed this file and never repairs a vault in place)"
	hintNotFile = "move it away and restore the vault file from a backup, or point the configuration at the vault file (tagwatchd has changed nothing)"
	hintForeign = "this is not a tagwatch vault: point the configuration at the vault file, or move this file away and restore the vault from a backup (tagwatchd has not changed it)"
	hintRunning = "stop tagwatchd and restore the vault from a backup (tagwatchd never repairs a vault in place)"
)

// The layout of a bbolt file (go.etcd.io/bbolt internal/common), in the
// byte order of the machine, as bbolt writes it.
const (
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	boltPageHeaderSize = 16 // id u64, flags u16, count u16, overflow u32
	boltMetaSize       = 64 // magic, version, page size, flags u32; root, sequence, freelist, high water, txid, checksum u64
	boltElementSize    = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	boltBucketHeader   = 16 // root pgid, sequence u64
	boltNoFreelist     = ^uint64(0)
	flagBranch         = 0x01
	flagLeaf           = 0x02
	flagMeta           = 0x04
	flagFreelist       = 0x10
	flagBucketEntry    = 0x01
	// maxDepth bounds the descent from the root (branch pages and nested
	// buckets together); a b+tree of 2^64 pages is 64 levels deep.
	maxDepth = 128
)

var ne = binary.NativeEndian

// identify says what is at path, reading only. exists is false when
// nothing is there (a new vault may be created). A path that is not a
// usable vault file gives a *BadFileError; a file another process holds
// gives ErrLocked after lockTimeout.
func identify(path string, lockTimeout time.Duration) (exists bool, err error) {
	lfi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, withoutPath(err)
	}
	bad := func(hint, format string, args ...any) (bool, error) {
		return true, &BadFileError{Path: path, Found: fmt.Sprintf(format, args...), Hint: hint}
	}
	fi, err := os.Stat(path)
	if err != nil {
		if lfi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			switch {
			case errors.Is(err, syscall.ELOOP):
				return bad(hintNotFile, "is a symbolic link loop (it points to %s)", target)
			case errors.Is(err, os.ErrNotExist):
				return bad(hintNotFile, "is a symbolic link to %s, which does not exist", target)
			}
		}
		return true, withoutPath(err)
	}
	if what := seal.NotRegular(fi.Mode()); what != "" {
		return bad(hintNotFile, "is %s, not a vault file", what)
	}
	// O_NONBLOCK: should a FIFO be swapped in since the stat, opening it
	// does not wait for a writer; the fstat below then refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return true, withoutPath(err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return true, withoutPath(err)
	}
	if what := seal.NotRegular(fi.Mode()); what != "" {
		return bad(hintNotFile, "is %s, not a vault file", what)
	}
	// A shared lock while reading: a daemon holding the vault may be
	// writing it (bbolt's own lock comes after; ours is released first).
	if err := flockShared(f, lockTimeout); err != nil {
		return true, err
	}
	if found := examine(f, fi.Size()); found != nil {
		found.Path = path
		return true, found
	}
	return true, nil
}

// flockShared takes a shared lock on f, waiting up to timeout while an
// exclusive holder (a running daemon) has it: ErrLocked after that.
func flockShared(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock: %w", err)
		}
		if time.Now().After(deadline) {
			return ErrLocked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// boltMeta is one header (meta) page of a bbolt file.
type boltMeta struct {
	magic, version, pageSize uint32
	root, freelist, pgid     uint64
	txid, checksum, sum      uint64
}

func parseMeta(b []byte) boltMeta {
	h := fnv.New64a()
	h.Write(b[:56])
	return boltMeta{magic: ne.Uint32(b[0:]), version: ne.Uint32(b[4:]), pageSize: ne.Uint32(b[8:]),
		root: ne.Uint64(b[16:]), freelist: ne.Uint64(b[32:]), pgid: ne.Uint64(b[40:]), txid: ne.Uint64(b[48:]),
		checksum: ne.Uint64(b[56:]), sum: h.Sum64()}
}

// valid is bbolt's own check of a meta page (common.Meta.Validate).
func (m boltMeta) valid() bool {
	return m.magic == boltMagic && m.version == boltVersion && m.checksum == m.sum
}

// readMeta reads the meta page at off, if the file holds it.
func readMeta(r io.ReaderAt, size, off int64) (boltMeta, bool) {
	if off+boltPageHeaderSize+boltMetaSize > size {
		return boltMeta{}, false
	}
	var b [boltPageHeaderSize + boltMetaSize]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	return parseMeta(b[boltPageHeaderSize:]), true
}

// examine says what the file r of size bytes is, when it is not a usable
// tagwatch vault (nil when it is one). It reads the header pages as bbolt
// does, then every page of the tree and the freelist, so that nothing
// bbolt reads afterwards lies outside the file, is of the wrong kind, or
// is reached twice. Path is left for the caller to fill.
func examine(r io.ReaderAt, size int64) *BadFileError {
	found := func(hint string, cause error, format string, args ...any) *BadFileError {
		return &BadFileError{Found: fmt.Sprintf(format, args...), Hint: hint, Err: cause}
	}
	if size == 0 {
		return found(hintRestore, nil, "is empty (0 bytes)")
	}
	head := make([]byte, min(size, 4096))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return found(hintRestore, nil, "cannot be read: %v", withoutPath(err))
	}
	if size < boltPageHeaderSize+boltMetaSize {
		if isBoltPrefix(head) {
			return found(hintRestore, nil, "is cut short: %s, too few to hold a vault's header (a vault starts with two header pages of 4096 bytes)", plural(size, "byte"))
		}
		return found(hintForeign, nil, "is not a vault: %s", sniff(head, size))
	}

	// The header pages, found as bbolt finds them (db.getPageSize, mmap):
	// page 0, then page 1 at each page size bbolt tries.
	m0 := parseMeta(head[boltPageHeaderSize:])
	var m1 boltMeta
	ok1 := false
	magic1 := false
	if m0.valid() && validPageSize(m0.pageSize) {
		m1, ok1 = readMeta(r, size, int64(m0.pageSize))
		magic1 = ok1 && m1.magic == boltMagic
		ok1 = ok1 && m1.valid()
	} else {
		for i := range 15 {
			pos := int64(1024) << i
			m, ok := readMeta(r, size, pos)
			if !ok {
				break
			}
			magic1 = magic1 || m.magic == boltMagic
			if m.valid() && int64(m.pageSize) == pos {
				m1, ok1 = m, true
				break
			}
		}
	}
	var m boltMeta
	switch {
	case m0.valid() && ok1:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case m0.valid():
		m = m0
	case ok1:
		m = m1
	case m0.magic == boltMagic && m0.version != boltVersion:
		return found(hintForeign, nil, "is a bbolt file of format version %d; this tagwatch reads version %d", m0.version, boltVersion)
	case m0.magic == boltMagic && validPageSize(m0.pageSize) && size < 2*int64(m0.pageSize):
		return found(hintRestore, nil, "is cut short: %s, fewer than its two header pages (2 × %d bytes), and the first fails its checksum",
			plural(size, "byte"), m0.pageSize)
	case m0.magic == boltMagic || magic1:
		return found(hintRestore, nil, "has both header pages damaged: bbolt's meta pages 0 and 1 fail their checksum")
	case isBoltPrefix(head[:boltPageHeaderSize]):
		return found(hintRestore, nil, "has a damaged header: page 0 is not a bbolt header page (%s)", plural(size, "byte"))
	default:
		return found(hintForeign, nil, "is not a vault: %s", sniff(head, size))
	}
	if !validPageSize(m.pageSize) {
		return found(hintRestore, nil, "has a damaged header: it names a page size of %d bytes", m.pageSize)
	}
	ps := uint64(m.pageSize)
	if hi, want := bits.Mul64(m.pgid, ps); hi != 0 || want > uint64(size) {
		wantText := fmt.Sprint(want)
		if hi != 0 {
			wantText = "more than 2^64"
		}
		return found(hintRestore, nil, "is cut short: %s, its header says %s (%s of %d bytes)",
			plural(size, "byte"), wantText, plural(int64(m.pgid), "page"), ps)
	}
	w := &walker{r: r, ps: ps, hwm: m.pgid, seen: newPageSet(m.pgid), freed: newPageSet(m.pgid)}
	if err := w.run(m); err != nil {
		return found(hintRestore, nil, "has damaged pages: %v", err)
	}
	if !w.keyring {
		what := "it holds no buckets"
		if len(w.buckets) > 0 {
			slices.Sort(w.buckets)
			if len(w.buckets) > 8 {
				w.buckets = append(w.buckets[:8], "...")
			}
			what = "its buckets: " + strings.Join(w.buckets, ", ")
		}
		return found(hintForeign, ErrNoKeyring, "is a bbolt database without a tagwatch keyring, of another program (%s)", what)
	}
	return nil
}

// validPageSize: a power of two bbolt could have chosen (the OS page
// size; tagwatch never sets another).
func validPageSize(ps uint32) bool {
	return ps >= 1024 && ps <= 1<<16 && ps&(ps-1) == 0
}

// isBoltPrefix reports whether b agrees with the start of a bbolt file as
// far as it goes: page 0, flagged meta, then the magic and version 2.
func isBoltPrefix(b []byte) bool {
	var start [24]byte
	ne.PutUint16(start[8:], flagMeta)
	ne.PutUint32(start[16:], boltMagic)
	ne.PutUint32(start[20:], boltVersion)
	n := min(len(b), len(start))
	// count (bytes 10-11) is 0 on a meta page; overflow 0.
	return bytes.Equal(b[:n], start[:n])
}

// sniff names the content of a file that is no bbolt file, without
// quoting it (it may be a secret put at the wrong path).
func sniff(head []byte, size int64) string {
	has := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	n := plural(size, "byte")
	switch {
	case has(0, "SQLite format 3\x00"):
		return "an SQLite database (" + n + ")"
	case has(0, "\x1f\x8b"):
		return "a gzip-compressed file (" + n + "; a compressed backup? decompress it first)"
	case has(0, "PK\x03\x04"), has(0, "PK\x05\x06"):
		return "a zip archive (" + n + ")"
	case has(257, "ustar"):
		return "a tar archive (" + n + ")"
	case has(0, "BZh"):
		return "a bzip2-compressed file (" + n + ")"
	case has(0, "\xfd7zXZ\x00"):
		return "an xz-compressed file (" + n + ")"
	case has(0, "\x28\xb5\x2f\xfd"):
		return "a zstd-compressed file (" + n + ")"
	case has(0, "-----BEGIN "):
		return "a PEM file, a key or certificate (" + n + ")"
	}
	if utf8.Valid(head) || (len(head) == 4096 && utf8.Valid(head[:4096-utf8.UTFMax])) {
		text := bytes.TrimLeft(head, " \t\r\n\ufeff")
		if len(text) > 0 && (text[0] == '{' || text[0] == '[') && (size > int64(len(head)) || json.Valid(head)) {
			return "JSON text (" + n + ")"
		}
		if !bytes.ContainsFunc(head, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\r' && r != '\t' }) {
			return "a text file (" + n + ")"
		}
	}
	return n + " of unrecognised content, no bbolt header"
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// walker reads the pages of a bbolt file as bbolt will, checking each
// before it is followed.
type walker struct {
	r       io.ReaderAt
	ps, hwm uint64
	// seen and freed are bitsets over page ids below hwm: reached in the
	// walk, listed in the freelist.
	seen, freed pageSet
	// buckets are the names of the top-level buckets; keyring is whether
	// meta/keyring is there (a tagwatch vault).
	buckets []string
	keyring bool
}

func (w *walker) run(m boltMeta) error {
	if m.root < 2 || m.root >= w.hwm {
		return fmt.Errorf("the header names root page %d, outside the file's %s", m.root, plural(int64(w.hwm), "page"))
	}
	if m.freelist != boltNoFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return err
		}
	}
	return w.tree(m.root, 0, 0, "")
}

// page reads page id with its overflow pages, checking that it lies in the
// file, carries its own id, and was not reached before nor is free.
func (w *walker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d is referenced but the file has %s", id, plural(int64(w.hwm), "page"))
	}
	b := make([]byte, w.ps)
	if _, err := w.r.ReadAt(b, int64(id*w.ps)); err != nil {
		return nil, fmt.Errorf("page %d: %v", id, err)
	}
	if got := ne.Uint64(b[0:]); got != id {
		return nil, fmt.Errorf("page %d carries the id %d", id, got)
	}
	overflow := uint64(ne.Uint32(b[12:]))
	if id+overflow >= w.hwm {
		return nil, fmt.Errorf("page %d runs %s past the file's %s", id, plural(int64(overflow), "page"), plural(int64(w.hwm), "page"))
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen.has(i) {
			return nil, fmt.Errorf("page %d is referenced twice", i)
		}
		if w.freed.has(i) {
			return nil, fmt.Errorf("page %d is in use and also listed as free", i)
		}
		w.seen.add(i)
	}
	if overflow > 0 {
		b = append(b, make([]byte, overflow*w.ps)...)
		if _, err := w.r.ReadAt(b[w.ps:], int64((id+1)*w.ps)); err != nil {
			return nil, fmt.Errorf("page %d: %v", id, err)
		}
	}
	return b, nil
}

// pageSet is a set of page ids below a bound, one bit each.
type pageSet []uint64

func newPageSet(n uint64) pageSet { return make(pageSet, (n+63)/64) }

func (s pageSet) has(id uint64) bool { return id/64 < uint64(len(s)) && s[id/64]&(1<<(id%64)) != 0 }

func (s pageSet) add(id uint64) {
	if id/64 < uint64(len(s)) {
		s[id/64] |= 1 << (id % 64)
	}
}

func pageFlags(b []byte) uint16 { return ne.Uint16(b[8:]) }
func pageCount(b []byte) uint64 { return uint64(ne.Uint16(b[10:])) }

func (w *walker) freelist(id uint64) error {
	b, err := w.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if f := pageFlags(b); f != flagFreelist {
		return fmt.Errorf("the freelist page %d is not a freelist page (flags %#x)", id, f)
	}
	start, count := uint64(boltPageHeaderSize), pageCount(b)
	if count == 0xFFFF {
		count = ne.Uint64(b[boltPageHeaderSize:])
		start += 8
	}
	if count > (uint64(len(b))-start)/8 {
		return fmt.Errorf("the freelist page %d lists %d pages, more than it holds", id, count)
	}
	for i := range count {
		p := ne.Uint64(b[start+8*i:])
		if p < 2 || p >= w.hwm {
			return fmt.Errorf("the freelist page %d lists page %d, outside the file's %s", id, p, plural(int64(w.hwm), "page"))
		}
		if w.freed.has(p) || w.seen.has(p) {
			return fmt.Errorf("the freelist page %d lists page %d twice or lists itself", id, p)
		}
		w.freed.add(p)
	}
	return nil
}

// elem returns the bytes of n at pos from the element at off in b, if
// they lie inside b.
func elem(b []byte, off, pos, n uint64) ([]byte, bool) {
	start := off + pos
	if start < off || start+n < start || start+n > uint64(len(b)) {
		return nil, false
	}
	return b[start : start+n], true
}

// tree checks the page id and everything below it. level is the bucket
// nesting (0: the root bucket, whose entries are the top-level buckets);
// name is the bucket's name at level 1.
func (w *walker) tree(id uint64, depth, level int, name string) error {
	if depth > maxDepth {
		return fmt.Errorf("page %d is more than %d levels deep", id, maxDepth)
	}
	b, err := w.page(id)
	if err != nil {
		return err
	}
	count := pageCount(b)
	if boltPageHeaderSize+count*boltElementSize > uint64(len(b)) {
		return fmt.Errorf("page %d has %d elements, more than it holds", id, count)
	}
	switch f := pageFlags(b); f {
	case flagBranch:
		if count == 0 {
			return fmt.Errorf("branch page %d has no elements", id)
		}
		for i := range count {
			off := boltPageHeaderSize + i*boltElementSize
			pos, ksize := uint64(ne.Uint32(b[off:])), uint64(ne.Uint32(b[off+4:]))
			if _, ok := elem(b, off, pos, ksize); !ok {
				return fmt.Errorf("page %d: element %d's key runs past the page's end", id, i)
			}
			if err := w.tree(ne.Uint64(b[off+8:]), depth+1, level, name); err != nil {
				return err
			}
		}
		return nil
	case flagLeaf:
		return w.leaf(b, fmt.Sprintf("page %d", id), depth, level, name)
	default:
		return fmt.Errorf("page %d is %s where a branch or leaf page belongs", id, pageKind(f))
	}
}

// leaf checks the elements of the leaf page b (a page, or an inline
// bucket's page inside a value) and follows the buckets it holds.
func (w *walker) leaf(b []byte, where string, depth, level int, name string) error {
	count := pageCount(b)
	if boltPageHeaderSize+count*boltElementSize > uint64(len(b)) {
		return fmt.Errorf("%s has %d elements, more than it holds", where, count)
	}
	for i := range count {
		off := boltPageHeaderSize + i*boltElementSize
		flags, pos := ne.Uint32(b[off:]), uint64(ne.Uint32(b[off+4:]))
		ksize, vsize := uint64(ne.Uint32(b[off+8:])), uint64(ne.Uint32(b[off+12:]))
		kv, ok := elem(b, off, pos, ksize+vsize)
		if !ok || ksize+vsize < ksize {
			return fmt.Errorf("%s: element %d runs past the page's end", where, i)
		}
		key, val := kv[:ksize], kv[ksize:]
		if flags&flagBucketEntry == 0 {
			if level == 1 && name == string(bucketMeta) && string(key) == string(keyKeyring) {
				w.keyring = true
			}
			continue
		}
		if level == 0 {
			w.buckets = append(w.buckets, fmt.Sprintf("%q", key))
		}
		if len(val) < boltBucketHeader {
			return fmt.Errorf("%s: bucket %q has a %d-byte header, want %d", where, key, len(val), boltBucketHeader)
		}
		child := name
		if level == 0 {
			child = string(key)
		}
		if root := ne.Uint64(val); root != 0 {
			if err := w.tree(root, depth+1, level+1, child); err != nil {
				return err
			}
			continue
		}
		// An inline bucket: its one leaf page follows the header.
		inline := val[boltBucketHeader:]
		if len(inline) < boltPageHeaderSize {
			return fmt.Errorf("%s: inline bucket %q is shorter than a page header", where, key)
		}
		if f := pageFlags(inline); f != flagLeaf {
			return fmt.Errorf("%s: inline bucket %q holds %s, not a leaf page", where, key, pageKind(f))
		}
		if depth+1 > maxDepth {
			return fmt.Errorf("%s: buckets nested more than %d levels deep", where, maxDepth)
		}
		if err := w.leaf(inline, fmt.Sprintf("%s: inline bucket %q", where, key), depth+1, level+1, child); err != nil {
			return err
		}
	}
	return nil
}

func pageKind(f uint16) string {
	switch f {
	case flagBranch:
		return "a branch page"
	case flagLeaf:
		return "a leaf page"
	case flagMeta:
		return "a header (meta) page"
	case flagFreelist:
		return "a freelist page"
	}
	return fmt.Sprintf("a page of no known kind (flags %#x)", f)
}

// filePages checks the file's pages as Open does (examine), reading them
// through bbolt's own descriptor rather than its map, so that pages
// damaged or cut off under an open store are reported, not faulted on
// (bbolt's Tx.Check reads the map in a goroutine of its own, where a
// fault cannot be contained). Call it inside a transaction: no writer
// commits meanwhile.
func (db *DB) filePages() error {
	if db.file == nil {
		return nil
	}
	fi, err := db.file.Stat()
	if err != nil {
		return err
	}
	if bad := examine(db.file, fi.Size()); bad != nil {
		return errors.New("the file " + bad.Found)
	}
	return nil
}

// contained runs fn, which reads the file through bbolt, with memory
// faults turned into panics (debug.SetPanicOnFault: a page mapped past a
// file's end raises SIGBUS), and turns a fault, or a panic raised inside
// bbolt, into a *BadFileError for path. Any other panic is a bug of
// tagwatch's and goes on.
func contained(path, hint string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if !fromFile(r) {
				panic(r)
			}
			err = &BadFileError{Path: path, Found: fmt.Sprintf("could not be read, its pages are damaged (%v)", r), Hint: hint}
		}
	}()
	return fn()
}

// fromFile reports whether the panic being recovered (r) is a memory
// fault, or was raised inside bbolt. Called from the deferred function,
// while the panicking frames are still on the stack.
func fromFile(r any) bool {
	if _, ok := r.(interface{ Addr() uintptr }); ok {
		return true // a fault at an address: the mapped file
	}
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
	panicking := false
	for {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic":
			panicking = true
		case panicking && !strings.HasPrefix(f.Function, "runtime."):
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt")
		}
		if !more {
			return false
		}
	}
}

// Identify says what is at path, reading only: nil for a tagwatch vault
// or for nothing at all, a *BadFileError for anything else (ErrLocked
// while another process holds the vault for a second).
func Identify(path string) error {
	_, err := identify(path, time.Second)
	var bad *BadFileError
	if err != nil && !errors.As(err, &bad) {
		return fmt.Errorf("vault: %s: %w", path, err)
	}
	return err
}
