//! The simulated dongle's serial line: a pseudo-terminal pair. The gateway opens the slave
//! side by its path (`/dev/pts/N`, or the link to it) as it would a USB serial device; the
//! simulator reads and writes the master side.

use std::path::PathBuf;

use tokio::io::{ReadHalf, WriteHalf};
use tokio_serial::{SerialPort as _, SerialStream};

use super::error::RadioSimError;

/// One plugged-in dongle.
#[derive(Debug)]
pub(super) struct Line {
    /// The master side, for reading what the gateway writes.
    pub(super) reader: ReadHalf<SerialStream>,
    /// The master side, for writing what the gateway reads.
    pub(super) writer: WriteHalf<SerialStream>,
    /// The slave side, held open by the simulator so that the master reads nothing (rather
    /// than failing with EIO) while the gateway has the device closed, and what is written
    /// waits in the line for the gateway to open it, as with a real dongle's USB serial.
    pub(super) slave: SerialStream,
    /// The slave's path, for the gateway's configuration.
    pub(super) device: PathBuf,
}

impl Line {
    /// Opens a new pair (in raw mode, 8 bits clean). Must be called within a tokio runtime.
    pub(super) fn open() -> Result<Line, RadioSimError> {
        let (master, slave) = SerialStream::pair().map_err(|error| RadioSimError::Pty {
            reason: error.to_string(),
        })?;
        let device = slave
            .name()
            .map(PathBuf::from)
            .ok_or_else(|| RadioSimError::Pty {
                reason: "the slave side has no path".to_owned(),
            })?;
        let (reader, writer) = tokio::io::split(master);
        Ok(Line {
            reader,
            writer,
            slave,
            device,
        })
    }
}
