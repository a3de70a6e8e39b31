package testkit

import (
	"bytes"
	"encoding/binary"
)

// EmptyEntriesZip is a zip of n central directory entries, all naming the
// same empty stored file: 47 bytes each, the cheapest entries a zip can
// hold, and some 300 bytes each in the memory of a reader that keeps them
// all (archive/zip does). Hostile-upload tests use it.
func EmptyEntriesZip(n int) []byte {
	var b bytes.Buffer
	lh := make([]byte, 30)
	binary.LittleEndian.PutUint32(lh, 0x04034b50)
	binary.LittleEndian.PutUint16(lh[26:], 1)
	b.Write(lh)
	b.WriteByte('a')
	start := b.Len()
	ch := make([]byte, 46)
	binary.LittleEndian.PutUint32(ch, 0x02014b50)
	binary.LittleEndian.PutUint16(ch[28:], 1)
	b.Grow(n * 47)
	for i := 0; i < n; i++ {
		b.Write(ch)
		b.WriteByte('a')
	}
	end := make([]byte, 22)
	binary.LittleEndian.PutUint32(end, 0x06054b50)
	binary.LittleEndian.PutUint16(end[8:], uint16(n)) // zip readers compare the count modulo 2^16
	binary.LittleEndian.PutUint16(end[10:], uint16(n))
	binary.LittleEndian.PutUint32(end[12:], uint32(b.Len()-start))
	binary.LittleEndian.PutUint32(end[16:], uint32(start))
	b.Write(end)
	return b.Bytes()
}
